"""The process and its doors: the kserve.ModelServer, REST routes, access control, workers, registry following."""
