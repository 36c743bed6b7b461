"""The FRU inventory of a node (IPMI Platform Management FRU Information Storage Definition
v1.0): chassis, board and product info areas built from the node's identity.

    inventory = node_fru(node)          # FruInventory: readable fields (Redfish can use them)
    image = inventory.encode()          # the bytes Read FRU Data serves for FRU device 0
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bmc.node import Node

FORMAT_VERSION = 0x01
END_OF_FIELDS = 0xC1
LANGUAGE_ENGLISH = 0x00
CHASSIS_RACK_MOUNT = 0x17  # SMBIOS chassis type "Rack Mount Chassis"
#: board manufacturing time is counted in minutes from this moment
FRU_EPOCH = datetime(1996, 1, 1, tzinfo=UTC)
MAX_FIELD = 63  # a type/length byte holds 6 bits of length


@dataclass(frozen=True)
class FruInventory:
    chassis_type: int = CHASSIS_RACK_MOUNT
    chassis_part_number: str = ""
    chassis_serial: str = ""
    board_manufactured: datetime = datetime(2024, 1, 1, tzinfo=UTC)
    board_manufacturer: str = ""
    board_product: str = ""
    board_serial: str = ""
    board_part_number: str = ""
    product_manufacturer: str = ""
    product_name: str = ""
    product_part_number: str = ""
    product_version: str = ""
    product_serial: str = ""
    asset_tag: str = ""
    product_extra: tuple[str, ...] = field(default_factory=tuple)

    def encode(self) -> bytes:
        """The FRU image: common header, then the chassis, board and product areas."""
        areas = [self._chassis_area(), self._board_area(), self._product_area()]
        offsets, position = [], 1  # in 8-byte units; the header is unit 0
        for area in areas:
            offsets.append(position)
            position += len(area) // 8
        header = bytes((FORMAT_VERSION, 0, *offsets, 0, 0))
        return _with_checksum(header) + b"".join(areas)

    def _chassis_area(self) -> bytes:
        return _area(bytes((self.chassis_type,)),
                     [self.chassis_part_number, self.chassis_serial])

    def _board_area(self) -> bytes:
        minutes = int((self.board_manufactured - FRU_EPOCH).total_seconds() // 60)
        prefix = bytes((LANGUAGE_ENGLISH,)) + (minutes & 0xFFFFFF).to_bytes(3, "little")
        return _area(prefix, [self.board_manufacturer, self.board_product, self.board_serial,
                              self.board_part_number, ""])  # last: FRU file ID

    def _product_area(self) -> bytes:
        return _area(bytes((LANGUAGE_ENGLISH,)),
                     [self.product_manufacturer, self.product_name, self.product_part_number,
                      self.product_version, self.product_serial, self.asset_tag, "",
                      *self.product_extra])  # "" is the FRU file ID


def _type_length(text: str) -> bytes:
    """A field as 8-bit ASCII+Latin1 (type 11b) with its type/length byte."""
    data = text.encode("latin-1", "replace")[:MAX_FIELD]
    if len(data) == 1:
        data += b" "  # C1h (one byte of 8-bit ASCII) is the end-of-fields marker
    return bytes((0xC0 | len(data),)) + data


def _area(prefix: bytes, texts: list[str]) -> bytes:
    """An info area: version, length, `prefix`, fields, end marker, padding and checksum."""
    body = bytearray((FORMAT_VERSION, 0)) + prefix
    for text in texts:
        body += _type_length(text)
    body.append(END_OF_FIELDS)
    while (len(body) + 1) % 8:
        body.append(0)
    body[1] = (len(body) + 1) // 8
    return _with_checksum(bytes(body))


def _with_checksum(data: bytes) -> bytes:
    return data + bytes((-sum(data) & 0xFF,))


def node_fru(node: Node) -> FruInventory:
    """The inventory of `node`, from its identity and UUID."""
    ident = node.identity
    serial = ident.serial or node.uuid[:8].upper()
    part = f"{ident.product_id:04X}-{ident.manufacturer_id:06X}"
    return FruInventory(
        chassis_part_number=f"CH-{part}",
        chassis_serial=serial,
        board_manufacturer=ident.manufacturer,
        board_product=f"{ident.product} Mainboard",
        board_serial=f"MB-{serial}",
        board_part_number=f"MB-{part}",
        product_manufacturer=ident.manufacturer,
        product_name=ident.product,
        product_part_number=ident.part_number or part,
        product_version="A01",
        product_serial=serial,
        asset_tag=node.name,
        product_extra=(node.uuid,),
    )
