//! Unsupervised learning on Burn tensors: k-means (k-means++, restarts, purity / NMI), RBMs trained with contrastive divergence, weight sharing
