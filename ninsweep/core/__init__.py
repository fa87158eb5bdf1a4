"""One training run in PyTorch: ``layers``, ``model`` (the NIN, or a model factory's module),
``data`` (sources, cache, the on-device loader), ``devices``, ``train`` (the ``Trainer``) and
``checkpoint`` (its format and the rules for continuing one). torch only: never Ray, never
pandas; each module runs alone in a test or a notebook."""
