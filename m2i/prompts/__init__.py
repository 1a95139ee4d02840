"""Visual prompts from LLMs: template, providers, validation, CLIP token budget.

The ``generate`` stage calls :func:`m2i.prompts.generate.write_prompt` with a provider from
:func:`m2i.prompts.providers.get_provider`. See ``docs/prompts.md``.
"""
