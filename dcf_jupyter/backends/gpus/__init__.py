"""The GPUs a gateway hands to local and docker replicas: what this machine has (inventory.py), who holds which
(allocator.py), booked with every user's gateways (leases.py)."""
