"""The Public API's objects as ``az sphere`` prints them: ARM resources.

The mock has no Azure subscription or resource group: a resource's id carries the
resource group the user gave (``-g``; ``testbed`` when none) and the tenant's id in the
subscription's place, the catalog is the tenant (its name). docs/admin.md says so.
"""

from __future__ import annotations

from typing import Any

PROVIDER = "Microsoft.AzureSphere"
DEFAULT_RESOURCE_GROUP = "testbed"
OS_FEED_NAMES = {0: "Retail", 1: "RetailEval"}
UPDATE_POLICY_NAMES = {0: "UpdateAll", 1: "No3rdPartyAppUpdates"}


def enabled(flag: bool) -> str:
    return "Enabled" if flag else "Disabled"


class Scope:
    """Where the resources live in ARM terms: subscription (the tenant id), resource group, catalog."""

    def __init__(self, tenant_id: str, catalog: str, resource_group: str | None) -> None:
        self.tenant_id = tenant_id
        self.catalog = catalog
        self.resource_group = resource_group or DEFAULT_RESOURCE_GROUP

    def _id(self, *parts: str) -> str:
        base = f"/subscriptions/{self.tenant_id}/resourceGroups/{self.resource_group}/providers/{PROVIDER}"
        return base + "".join(f"/{p}" for p in parts)

    def _resource(self, rid: str, name: str, rtype: str, properties: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": rid,
            "name": name,
            "resourceGroup": self.resource_group,
            "type": f"{PROVIDER}/{rtype}",
            "properties": {**properties, "provisioningState": "Succeeded"},
            "systemData": None,
        }

    def catalog_resource(self, tenant: dict[str, Any]) -> dict[str, Any]:
        return self._resource(
            self._id("catalogs", tenant["Name"]), tenant["Name"], "catalogs",
            {"tenantId": tenant["Id"], "roles": tenant.get("Roles", [])},
        )  # fmt: skip

    def product(self, product: dict[str, Any]) -> dict[str, Any]:
        return self._resource(
            self._id("catalogs", self.catalog, "products", product["Name"]), product["Name"], "catalogs/products",
            {"description": product.get("Description"), "productId": product["Id"]},
        )  # fmt: skip

    def device_group(self, group: dict[str, Any], product_name: str) -> dict[str, Any]:
        deployment = group.get("CurrentDeployment")
        return self._resource(
            self._id("catalogs", self.catalog, "products", product_name, "deviceGroups", group["Name"]),
            group["Name"],
            "catalogs/products/deviceGroups",
            {
                "allowCrashDumpsCollection": enabled(bool(group["AllowCrashDumpsCollection"])),
                "description": group.get("Description"),
                "deviceGroupId": group["Id"],
                "hasDeployment": deployment is not None,
                "osFeedType": OS_FEED_NAMES.get(group.get("OsFeedType", 0), str(group.get("OsFeedType"))),
                "regionalDataBoundary": group.get("RegionalDataBoundary", "None"),
                "updatePolicy": UPDATE_POLICY_NAMES.get(group.get("UpdatePolicy", 0), str(group.get("UpdatePolicy"))),
            },
        )

    def device(self, device: dict[str, Any], product_name: str, group_name: str) -> dict[str, Any]:
        properties: dict[str, Any] = {"deviceId": device["DeviceId"], "chipSku": "MT3620AN"}
        if "DeviceSecret" in device:  # a testbed extension: the credential a board is provisioned with
            properties["deviceSecret"] = device["DeviceSecret"]
        return self._resource(
            self._id("catalogs", self.catalog, "products", product_name, "deviceGroups", group_name,
                     "devices", device["DeviceId"]),
            device["DeviceId"], "catalogs/products/deviceGroups/devices", properties,
        )  # fmt: skip


def device_group_row(resource: dict[str, Any]) -> dict[str, Any]:
    """The table view of a device group resource (as az's table transformer would show it)."""
    p = resource.get("properties", {})
    return {
        "Name": resource.get("name"),
        "ResourceGroup": resource.get("resourceGroup"),
        "AllowCrashDumpsCollection": p.get("allowCrashDumpsCollection"),
        "RegionalDataBoundary": p.get("regionalDataBoundary"),
        "OsFeedType": p.get("osFeedType"),
        "UpdatePolicy": p.get("updatePolicy"),
        "Description": p.get("description"),
    }


def generic_row(resource: dict[str, Any]) -> dict[str, Any]:
    """name, resource group, then the scalar properties."""
    props = resource.get("properties", {}) if isinstance(resource.get("properties"), dict) else {}
    return {"Name": resource.get("name"), "ResourceGroup": resource.get("resourceGroup"),
            **{k[:1].upper() + k[1:]: v for k, v in props.items()}}  # fmt: skip
