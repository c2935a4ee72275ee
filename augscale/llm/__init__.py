"""Generation engines shared by augment and evaluate.

- :mod:`augscale.llm.hf`: local Hugging Face causal LMs. ``generate`` (left-padded batches,
  greedy or sampled, stop tokens/strings, max new tokens) and ``reference_nll`` in-process;
  ``HFGenerator``, the Ray Data step holding a model per actor; ``generate_local`` over records.
- :mod:`augscale.llm.endpoint`: OpenAI-compatible endpoints. ``ChatClient`` (retries, failures
  as data), ``chat_many`` (bounded concurrency), ``EndpointGenerator`` (Ray Data step).
- :mod:`augscale.llm.batch`: the output columns both engines add (``prediction``,
  ``output_tokens``, ``finish_reason``, ``error``, ...).
- :mod:`augscale.llm.raydata`: ``map_batches``, the one wrapper around Ray Data's ``map_batches``.

Modules are imported on use so that, e.g., an endpoint user does not load torch.
"""
