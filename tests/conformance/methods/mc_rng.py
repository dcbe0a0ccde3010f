"""The engine's random numbers, written in Python from the algorithms' published definitions, so a
test can draw the very noise / weights / classes the engine drew and check what it did with them
(SmoothGrad noise, the uniform baseline, filter visualization's start, sanity_init, smooth MPRT,
random_logit) against PyTorch.

The definitions (not the engine's C code):
  SplitMix64   Steele, Lea & Flood 2014, "Fast splittable pseudorandom number generators"; Vigna's
               splitmix64.c: z = (x += 0x9e3779b97f4a7c15); z = (z ^ z>>30)·0xbf58476d1ce4e5b9;
               z = (z ^ z>>27)·0x94d049bb133111eb; return z ^ z>>31.
  xoshiro256** Blackman & Vigna 2018, "Scrambled linear pseudorandom number generators";
               xoshiro256starstar.c: result = rotl(s1·5, 7)·9; t = s1 << 17; s2 ^= s0; s3 ^= s1;
               s1 ^= s2; s0 ^= s3; s2 ^= t; s3 = rotl(s3, 45).
  uniform      the top 53 bits: (x >> 11) · 2⁻⁵³ in [0, 1) (Vigna's recommended conversion).
  normal       Marsaglia's polar method (Marsaglia & Bray 1964): u, v = 2U − 1; s = u² + v² until
               0 < s < 1; f = √(−2 ln s / s); returns u·f, keeps v·f for the next call.
The engine's seeding (engine/explain/methods.h rng_seed, documented there): the four state words
are SplitMix64 outputs from x = seed XOR (stream · 0xd1342543de82ef95); each use has its own stream
constant (below). test_rng_matches_the_published_vectors checks SplitMix64 and xoshiro256** against
the reference implementations' published outputs, so a mistake here cannot hide a mistake there.
"""
import math

import numpy as np

M64 = (1 << 64) - 1

# the stream of each random choice (engine/explain/*.c, engine/sanity/*.c)
STREAM_SMOOTHGRAD = 0x5300        # SmoothGrad noise
STREAM_UNIFORM_BASELINE = 0xBA5E  # baseline=uniform
STREAM_FILTER_VIZ = 0xF17E        # filter visualization: start noise and jitter
STREAM_SMOOTH_MPRT = 0x53D0       # sanity_noise_samples
STREAM_RANDOM_LOGIT = 0x10917     # random_logit's other class
STREAM_REINIT = 0x5A417100        # + the engine's node index: re-initialized weights


def splitmix64(state):
    """state: a one-element list holding x; returns the next output and advances x."""
    state[0] = (state[0] + 0x9E3779B97F4A7C15) & M64
    z = state[0]
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def _rotl(x, k):
    return ((x << k) | (x >> (64 - k))) & M64


class Rng:
    def __init__(self, seed=None, stream=0, state=None):
        if state is not None:
            self.s = list(state)
        else:
            x = [(seed ^ (stream * 0xD1342543DE82EF95)) & M64]
            self.s = [splitmix64(x) for _ in range(4)]
        self.spare = None

    def u64(self):
        s = self.s
        res = (_rotl((s[1] * 5) & M64, 7) * 9) & M64
        t = (s[1] << 17) & M64
        s[2] ^= s[0]
        s[3] ^= s[1]
        s[1] ^= s[2]
        s[0] ^= s[3]
        s[2] ^= t
        s[3] = _rotl(s[3], 45)
        return res

    def uniform(self):
        return (self.u64() >> 11) * 2.0 ** -53

    def normal(self):
        if self.spare is not None:
            v, self.spare = self.spare, None
            return v
        while True:
            u = 2 * self.uniform() - 1
            v = 2 * self.uniform() - 1
            s = u * u + v * v
            if 0 < s < 1:
                break
        f = math.sqrt(-2 * math.log(s) / s)
        self.spare = v * f
        return u * f

    def normals(self, n):
        return np.array([self.normal() for _ in range(n)], dtype=np.float64)

    def uniforms(self, n):
        return np.array([self.uniform() for _ in range(n)], dtype=np.float64)
