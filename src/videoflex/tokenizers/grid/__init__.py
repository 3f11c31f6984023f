"""The 3D-grid tokenizer (kind ``grid-tokenizer``): one FSQ token per latent patch, the flex tokenizer's
baseline (config, presets, encoder, decoder, model)."""
