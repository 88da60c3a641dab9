//! Compression of zoo models: pruning, BN folding, int8 quantization, distillation.
