"""alignlab's Hydra configs. Importing this package registers the typed schemas the yamls build on."""

from alignlab.schema import register

register()
