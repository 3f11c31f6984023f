"""What every model kind shares: one identity (:mod:`~videoflex.models.identity`) and saving, loading and
presets (:mod:`~videoflex.models.pretrained`). The kinds themselves are listed in :mod:`videoflex.registry`;
this package imports none of them."""
