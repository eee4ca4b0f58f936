"""The audio modality: DiffWave with global conditioning, audio datasets, a log-mel judge with pYIN pitch
accuracy, WAV files and mel-spectrogram grids."""

from crossguide.modalities.audio.modality import MODALITY, AudioModality

__all__ = ["MODALITY", "AudioModality"]
