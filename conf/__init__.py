"""alignlab's Hydra configs. Importing this package registers the typed schemas the yamls build on."""

from alignlab.runs.schema import register

register()
