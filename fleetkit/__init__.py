"""fleetkit: an elastic fleet of RQ workers on AWS spot capacity.

Every part installs under this one namespace (the workers share the user's application
environment, where top-level names such as `worker` or `infra` are the user's). In the
repository each part is a top-level folder; `fleetkit/<part>` is a symbolic link to it.
"""
