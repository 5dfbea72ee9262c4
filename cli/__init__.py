"""The ``volfefe`` management commands: a thin layer over the library."""
