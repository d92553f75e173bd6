"""The operator's optional xDS feed (:mod:`.feed`) and who may see a target (:mod:`.auth`)."""
