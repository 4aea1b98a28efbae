"""One place that turns a `--distribution_strategy` flag into a tf.distribute strategy."""

STRATEGIES = ("off", "one_device", "mirrored")

# One MirroredStrategy per device set and process: separate instances number
# their collective ops independently, and two of them in one process collide
# ("Shape mismatch in the collective instance ...").
_MIRRORED = {}


def get_strategy(name="off", devices=None):
    """Returns the `tf.distribute.Strategy` for `name`.

    Args:
        name: "off" (the default strategy: no distribution), "one_device"
            (the first GPU if there is one, else the CPU) or "mirrored"
            (synchronous data parallelism over every GPU; on a machine
            without GPUs, over every logical CPU device).
        devices: explicit device names for "mirrored" (e.g. in tests).
    """
    import tensorflow as tf

    if name == "off":
        return tf.distribute.get_strategy()
    if name == "one_device":
        gpus = tf.config.list_logical_devices("GPU")
        return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
    if name == "mirrored":
        if devices is None:
            gpus = tf.config.list_logical_devices("GPU")
            devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
        key = tuple(
            (spec.device_type.upper(), spec.device_index)
            for spec in (tf.DeviceSpec.from_string(device) for device in devices)
        )
        if key not in _MIRRORED:
            _MIRRORED[key] = tf.distribute.MirroredStrategy(list(devices))
        return _MIRRORED[key]
    raise ValueError(f"Unknown distribution strategy {name!r}; choose one of {list(STRATEGIES)}.")
