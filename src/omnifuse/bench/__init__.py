"""`omnifuse bench`: omnifuse against the ecosystem's baselines, alternating in one process on identical inputs.

train (packed omnifuse vs padded transformers LLaVA), generate (batched vs one prompt at a time),
preprocess (images, audio, video vs transformers' processors), scaling (step time vs images and length).
Each prints one JSON line; see README "Benchmarks".
"""
