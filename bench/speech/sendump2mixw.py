#!/usr/bin/env python3
"""Rebuild a Sphinx-3 `mixture_weights` file from a PocketSphinx PTM `sendump`.

The Debian en-us model ships only `sendump` (8-bit quantised -log mixture
weights), while sphinxtrain's `bw` needs `mixture_weights`. Each byte v is
-log_{1.0001}(p) >> 10 (pocketsphinx's SENSCR_SHIFT), so p = 1.0001^(-1024 v).
"""
import math, struct, sys

src, dst = sys.argv[1], sys.argv[2]
data = open(src, 'rb').read()
pos = 0
def i32():
    global pos
    v = struct.unpack_from('<i', data, pos)[0]; pos += 4; return v
# title, header, then strings until a zero length
for _ in range(2):
    n = i32(); pos += n
n_feat = 0
while True:
    n = i32()
    if n == 0:
        break
    s = data[pos:pos + n].rstrip(b'\0').decode(); pos += n
    if s.startswith('feature_count '):
        n_feat = int(s.split()[1])
    if s.startswith('cluster_count ') and int(s.split()[1]) != 0:
        sys.exit('clustered sendump not supported')
r, c = i32(), i32()  # r = densities per codebook, c = senones
assert len(data) - pos == n_feat * r * c, (n_feat, r, c, len(data) - pos)
k = 1024 * math.log(1.0001)
mixw = [[[0.0] * r for _ in range(n_feat)] for _ in range(c)]
for f in range(n_feat):
    for d in range(r):
        row = data[pos:pos + c]; pos += c
        for s in range(c):
            mixw[s][f][d] = math.exp(-k * row[s])
out = bytearray(b's3\nversion 1.0\nendhdr\n')
out += struct.pack('<I', 0x11223344)
out += struct.pack('<IIII', c, n_feat, r, c * n_feat * r)
for s in range(c):
    for f in range(n_feat):
        tot = sum(mixw[s][f])
        out += struct.pack('<%df' % r, *[w / tot for w in mixw[s][f]])
open(dst, 'wb').write(out)
print(f'{dst}: {c} senones x {n_feat} streams x {r} densities')
