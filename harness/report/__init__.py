"""Reports: build the JSON (the one source of facts), render Markdown from it, write atomically."""

# 2: intervals by the kind of value (ci_method), p-values on every paired metric, mde,
#    p_adjusted / significant_adjusted, settings.adjustment. Version 1 reports still load.
SCHEMA_VERSION = 2
READABLE_VERSIONS = (1, 2)
