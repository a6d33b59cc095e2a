"""Docker sandboxes (layered images, limited test runs, cleanup): the only code that talks to the daemon.

Filled in by the SWE mining flow; nothing else may import the docker SDK.
"""
