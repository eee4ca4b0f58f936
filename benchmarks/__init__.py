"""Benchmarks: per-modality guidance sweeps (``python -m crossguide.benchmarks.<modality>``, the same code as
``crossguide bench <modality>``), guidance cost, and the cross-modality study."""

MODALITIES = ("toy", "image", "audio", "text")  # the study's and the reference builds' modalities, in report order
