"""The local sandbox: stand-ins for what an instance finds on EC2, for tests and `make demo`.

Everything here is a test double that ships, named as what it is: `sandbox.imds` is a local
instance metadata service (IMDSv2) that can be told to send notices. It may use every other
part of fleetkit (it will orchestrate a whole local fleet); nothing outside tests imports it.
"""
