from fleetkit.infra.cli import main

main()
