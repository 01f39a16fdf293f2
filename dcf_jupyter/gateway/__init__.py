"""The DCF gateway server: the gRPC service (`service`, run by `app` in its own process), its HTTP face, its
state and limits, and how to run one (`options`, importable without the server). Starting, finding and stopping
gateway processes is `dcf_jupyter.launch`'s."""
