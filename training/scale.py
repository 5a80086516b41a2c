"""Distribution for ``training.train``: one Keras model trained data-parallel over the local devices.

* ``mirrored`` (tensorflow backend): ``tf.distribute.MirroredStrategy`` over the GPUs, or the
  logical CPU devices where there is no GPU; model and optimizer are built under its scope.
* ``data-parallel`` (jax backend): ``keras.distribution.DataParallel`` over
  ``keras.distribution.list_devices()``, set globally before the model is built.
* ``auto``: whichever of the two fits the backend when there is more than one device, else none.
* ``none``: no distribution (the default of ``training.train``).

:func:`split_host_cpu` makes several logical devices of the host CPU (tensorflow: logical
device configuration; jax: ``XLA_FLAGS=--xla_force_host_platform_device_count``), to run the
data-parallel path on a machine without accelerators.  It must run before the backend has
initialised its devices.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from dataclasses import dataclass, field

log = logging.getLogger("mirzoo.training")

CHOICES = ("none", "auto", "mirrored", "data-parallel")


def backend_name() -> str:
    """The Keras backend that ``import keras`` will pick (without importing keras when it is not loaded)."""
    if "keras" in sys.modules:
        import keras  # deferred: thread settings of training.train.main() come first

        return keras.backend.backend()
    return os.environ.get("KERAS_BACKEND", "tensorflow")


def split_host_cpu(n: int) -> None:
    """Split the host CPU into ``n`` logical devices for the Keras backend in use."""
    if n < 1:
        raise SystemExit(f"--cpu-devices {n}: must be at least 1")
    backend = backend_name()
    if backend == "jax":
        if "jax" in sys.modules:
            import jax  # deferred: optional backend

            if jax.local_device_count("cpu") != n:
                raise SystemExit(f"--cpu-devices {n}: jax is already initialised with {jax.local_device_count('cpu')} "
                                 "CPU devices; set XLA_FLAGS=--xla_force_host_platform_device_count=N before it starts")
            return
        flags = [f for f in os.environ.get("XLA_FLAGS", "").split() if "xla_force_host_platform_device_count" not in f]
        os.environ["XLA_FLAGS"] = " ".join(flags + [f"--xla_force_host_platform_device_count={n}"])
        return
    import tensorflow as tf  # deferred: thread settings of training.train.main() come first

    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * n)
    except RuntimeError as e:  # the runtime has started: only fine when it already has n devices
        if len(tf.config.list_logical_devices("CPU")) != n:
            raise SystemExit(f"--cpu-devices {n}: tensorflow has already initialised its devices ({e})") from e


@dataclass
class Scale:
    """The distribution of one run: ``kind`` (none / mirrored / data-parallel), replicas, devices."""

    kind: str = "none"
    backend: str = "tensorflow"
    replicas: int = 1
    devices: list[str] = field(default_factory=list)
    strategy: object = None  # tf.distribute.Strategy for mirrored
    distribution: object = None  # keras.distribution.Distribution for data-parallel

    def scope(self):
        """Context to build and compile the model in (the strategy's scope for ``mirrored``)."""
        return self.strategy.scope() if self.strategy is not None else contextlib.nullcontext()

    def check(self, model) -> None:
        """Confirm that the compiled model really trains over ``replicas`` devices; updates ``replicas``."""
        if self.kind == "mirrored":
            strategy = model.distribute_strategy
            if strategy is not self.strategy:
                raise RuntimeError("the model was not built under the MirroredStrategy scope")
            self.replicas = int(strategy.num_replicas_in_sync)
        elif self.kind == "data-parallel":
            import keras  # deferred: thread settings of training.train.main() come first

            dist = keras.distribution.distribution()
            if dist is not self.distribution:
                raise RuntimeError("the keras distribution changed after the model was built")
            # the variables are laid out (replicated) over the whole device mesh
            value = getattr(model.weights[0], "value", None)
            sharding = getattr(value, "sharding", None)
            if sharding is not None and len(sharding.device_set) != self.replicas:
                raise RuntimeError(f"model variables live on {len(sharding.device_set)} devices, "
                                   f"the distribution has {self.replicas}")

    def describe(self) -> str:
        if self.kind == "none":
            return "no distribution (1 replica)"
        return f"{self.kind} over {self.replicas} replicas ({', '.join(self.devices)})"


def _tf_devices() -> list[str]:
    import tensorflow as tf  # deferred: thread settings of training.train.main() come first

    return [d.name for d in (tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU"))]


def setup(kind: str, backend: str | None = None) -> Scale:
    """Resolve ``kind`` for the backend and install the distribution (before the model is built)."""
    backend = backend or backend_name()
    if kind not in CHOICES:
        raise SystemExit(f"--distribute {kind!r} must be one of {', '.join(CHOICES)}")
    if kind == "auto":
        if backend == "tensorflow":
            kind = "mirrored" if len(_tf_devices()) > 1 else "none"
        elif backend == "jax":
            import keras  # deferred: thread settings of training.train.main() come first

            kind = "data-parallel" if len(keras.distribution.list_devices()) > 1 else "none"
        else:
            kind = "none"
        log.info("--distribute auto: %s on the %s backend", kind, backend)
    if kind == "none":
        return Scale("none", backend)
    if kind == "mirrored":
        if backend != "tensorflow":
            raise SystemExit(f"--distribute mirrored needs the tensorflow backend (KERAS_BACKEND=tensorflow); "
                             f"the backend is {backend!r}" + (": use --distribute data-parallel" if backend == "jax" else ""))
        import tensorflow as tf  # deferred: thread settings of training.train.main() come first

        devices = _tf_devices()
        strategy = tf.distribute.MirroredStrategy(devices)
        if strategy.num_replicas_in_sync < 2:
            log.warning("--distribute mirrored with a single device: nothing runs in parallel")
        return Scale("mirrored", backend, int(strategy.num_replicas_in_sync), devices, strategy=strategy)
    # data-parallel
    if backend != "jax":
        raise SystemExit(f"--distribute data-parallel needs the jax backend (KERAS_BACKEND=jax); the backend is "
                         f"{backend!r}" + (": use --distribute mirrored" if backend == "tensorflow" else ""))
    import keras  # deferred: thread settings of training.train.main() come first

    devices = keras.distribution.list_devices()
    distribution = keras.distribution.DataParallel(devices=devices)
    keras.distribution.set_distribution(distribution)
    if len(devices) < 2:
        log.warning("--distribute data-parallel with a single device: nothing runs in parallel")
    return Scale("data-parallel", backend, len(devices), list(devices), distribution=distribution)


def release(scale: Scale) -> None:
    """Undo the global state of :func:`setup` (the keras distribution of ``data-parallel``)."""
    if scale.kind == "data-parallel":
        import keras  # deferred: thread settings of training.train.main() come first

        keras.distribution.set_distribution(None)
