"""Support modules of the OpenOOD adapter: device shim, networks, loaders, configs."""
