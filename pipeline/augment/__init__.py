"""The augment stage: MetaMath-style question bootstrapping (AnsAug, Rephrasing, SV, FOBAR) into MetaMathQA-format shards."""
