"""`oasis-autoscaler simulate`: what a configuration would do to a workload, before a cluster is
touched. A discrete-event simulation driving the real strategy, chunking, budget and KEDA cores.
"""
