//! Training zoo models on a runtime-chosen backend with burn-train's Learner: data, optimizers, regularization, metrics, reports
