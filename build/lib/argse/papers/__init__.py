"""Paper harnesses above the library: Narasimhan et al. (ICLR 2024)'s Table 2 and a run reproduced over
seeds, each with its results page."""
