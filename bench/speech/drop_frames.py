#!/usr/bin/env python3
"""Simulates packet loss on an 8 kHz PCM16 mono WAV: each 20 ms frame (one RTP packet) is
lost with probability P and replaced by silence (a jitter buffer without concealment).
The draw is seeded from the output file name, so the same set is made every time.

    drop_frames.py IN.wav OUT.wav P
"""
import random, sys, wave, zlib

src, dst, p = sys.argv[1], sys.argv[2], float(sys.argv[3])
with wave.open(src, 'rb') as w:
    params = w.getparams()
    assert params.framerate == 8000 and params.sampwidth == 2 and params.nchannels == 1, params
    data = bytearray(w.readframes(params.nframes))
rng = random.Random(zlib.crc32(dst.rsplit('/', 1)[-1].encode()))
frame = 160 * 2
for start in range(0, len(data), frame):
    if rng.random() < p:
        data[start:start + frame] = bytes(len(data[start:start + frame]))
with wave.open(dst, 'wb') as w:
    w.setparams(params)
    w.writeframes(bytes(data))
