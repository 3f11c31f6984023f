"""Generators: models that sample token ids of a tokenizer (docs/design.md, "Model families").

``ar/``: the autoregressive transformer over ids (:class:`~videoflex.generators.ar.model.ARGenerator`, kind
``"ar-generator"``), its token orders and its sampler. Generators import ``nn``, ``models`` and
``tokenizers.base``; nothing below them imports this package.
"""
