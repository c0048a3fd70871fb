"""webinstruct: web crawls -> instruction-tuning data -> trained and evaluated models.

One import name for the whole project. The sub-packages are the checkout's top-level folders,
mapped by `setup.py` (`package_dir`), layered from the bottom up (each imports only the layers
below it; `tests/test_layers.py` checks):

    webinstruct.core        config, schema, I/O, stats, answer reading, prompt formats, models
    webinstruct.pipeline.llm, webinstruct.pipeline.runners
                            LLM access (client, cache, local server) and Beam runner settings
    webinstruct.pipeline.*  the stages: recall, extract, refine, augment (and their reports)
    webinstruct.training    fine-tuning with DeepSpeed
    webinstruct.evaluation  benchmarks, backends, graders
    webinstruct.infra       the `webinstruct` command, recipes, DeepSpeed configs
    webinstruct.data        bundled data: sample WARCs, seeds, exemplars, benchmarks
"""
__version__ = "0.1.0"
