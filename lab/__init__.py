"""lab: a profiling and ablation lab for training speed (first subject: ResNet on CIFAR-10)."""

__version__ = "0.1.0"
