"""What the PBX itself answers: feature codes (features.py); voicemail, IVR next."""
