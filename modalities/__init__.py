"""Reference modalities: each sub-package is a plug-in registered through the ``crossguide.modalities`` entry
points (see ``crossguide.registry``)."""
