"""What the PBX itself answers: feature codes now; voicemail, IVR and music on hold later."""
