"""Model resolution, the seed of the model registry: what a model reference (``smollm2``,
``models/x.gguf``, ``MODEL+ADAPTER``) names in a repository, and the embedded defaults."""
