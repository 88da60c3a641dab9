//! Fast CPU kernels for ops where Burn's backends are slow (depthwise convolution), as Burn backend extensions
