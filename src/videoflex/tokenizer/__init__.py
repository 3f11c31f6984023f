"""The VideoFlexTok tokenizer: encoder, FSQ, flow decoder, samplers, presets."""
