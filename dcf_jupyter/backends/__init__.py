"""Where replicas run, behind one Backend interface (base.py), each backend a subpackage the registry names
(registry.py: what each can do, made only when a gateway needs it): worker processes (local/), containers
(docker/), Ray Serve replicas (ray/); the GPUs local and docker replicas get (gpus/); how a worker process or
container is started (launcher.py) and the files a replica gets (replica_files.py)."""
