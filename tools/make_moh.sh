#!/bin/sh
# The default music on hold, sipd/media/sounds/moh-default.wav (8 s, 8 kHz mono
# mu-law, 63 KB): three plucked arpeggios (C, Am, F, G) synthesised by sox, so
# the PBX ships music nobody holds a copyright on. Run from the repository root.
set -e
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
i=0
for note in C4 E4 G4 C5 G4 E4 A3 C4 E4 A4 E4 C4 F3 A3 C4 F4 C4 A3 G3 B3 D4 G4 D4 B3; do
    i=$((i + 1))
    sox -n -r 8000 -c 1 -b 16 "$work/n$(printf %02d $i).wav" \
        synth 0.33 pluck "$note" vol 0.5 fade 0 0.33 0.05
done
sox "$work"/n*.wav -r 8000 -c 1 -e u-law sipd/media/sounds/moh-default.wav reverb 30 norm -6
