"""Luigi's tools: date ranges (:mod:`.range`) and dependency trees (:mod:`.deps_tree`)."""
