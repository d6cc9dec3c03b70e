"""Admin tools over the service's public API, shaped like the ones Azure Sphere users know.

- ``testbed sphere ...``: the ``az sphere`` commands for catalogs (tenants), products,
  device groups and devices (:mod:`testbed.admin.sphere`);
- ``testbed crashdumps configure``: the Azure Sphere Gallery's bulk consent script
  (:mod:`testbed.admin.crashdumps`).

Both talk to the public API only, through ``testbed.service.client``; docs/admin.md maps
their options and output to Azure Sphere's.
"""
