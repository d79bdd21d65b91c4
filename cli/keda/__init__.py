"""One model of KEDA: what KEDA and the HPA do with our ScaledObject, and calls made as KEDA
makes them. The manifest generator, the simulator, the local stand-in and the tests share it."""
