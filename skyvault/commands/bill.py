"""`skyvault bill` and `skyvault usage`: a month's invoice, and this month's usage so far.

With --tenant (an operator, on the stack's services) the tenant's vaults, or --vault's; without,
this machine's vault through the service's signed API (`GET bill`). Both print the same
statement (shared/service/bills.py): the invoice's lines by vault (an instance line per item,
storage by redundancy, soft-deleted storage, restores, egress and transactions at zero), the
total, and per vault its stored bytes as metered and as last measured, and each item's unique
and shared bytes. --json prints the statement (a "summary" object), --csv the invoice's rows."""
from __future__ import annotations

import argparse
from typing import Any

from skyvault import exitcodes, home
from skyvault.commands.common import human, operator_services, say
from skyvault.vaultclient import AgentError, AgentVault


def add_parser(subparsers) -> None:
    bill = subparsers.add_parser(
        "bill", help="a month's invoice: protected instances, storage, restores at zero",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="A month's invoice by vault (an instance line per item, storage by redundancy, soft-deleted\n"
                    "storage; restores, egress and transactions at zero), then each vault's stored bytes.\n"
                    "Without --tenant: this machine's vault, through its agent.",
        epilog="examples:\n  skyvault bill\n  skyvault bill --tenant contoso --month 2026-11\n"
               "  skyvault bill --tenant contoso --vault laptops --csv")
    _scope(bill)
    bill.add_argument("--month", metavar="YYYY-MM", help="the month billed (default: this month so far)")
    bill.add_argument("--csv", action="store_true", help="the invoice's lines as CSV rows (not with --json)")
    bill.set_defaults(func=run_bill)
    usage = subparsers.add_parser(
        "usage", help="this month's usage so far, and what it costs",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="This month's usage so far by vault (stored bytes as metered and as measured, restores,\n"
                    "soft-deleted points, each item's unique and shared bytes) and what it costs.",
        epilog="examples:\n  skyvault usage\n  skyvault usage --tenant contoso --vault laptops --json")
    _scope(usage)
    usage.set_defaults(func=run_usage, month=None, csv=False)


def _scope(parser) -> None:
    parser.add_argument("--tenant", help="operator: the tenant billed (default: this machine's vault, by its agent)")
    parser.add_argument("--vault", help="operator, with --tenant: only this vault (name or id)")


def statement(args: argparse.Namespace) -> dict[str, Any]:
    """The statement document, from the stack's services or this machine's vault's API."""
    if args.vault and not args.tenant:
        raise AgentError("--vault needs --tenant (an operator's bill); without both, this machine's vault is billed")
    if not args.tenant:
        return AgentVault(home.agent_state()["credentials"]).bill(args.month)
    from shared.errors import ServiceError
    from shared.service import bills, vaults

    services = operator_services()
    try:
        month = bills.parse_month(args.month) if args.month else None
        chosen = [vaults.find_vault(services, args.tenant, args.vault)] if args.vault else None
        found = bills.statement(services, args.tenant, month, chosen)
    except ServiceError as e:
        raise AgentError(str(e)) from None
    return found.to_doc()


def run_bill(args: argparse.Namespace) -> int:
    if args.json and args.csv:
        raise AgentError("--csv and --json are two forms of the bill: give one of them")
    doc = statement(args)
    if args.json:
        args.output.summary(statement=doc)
    elif args.csv:
        from shared.billing import invoice_csv

        print(invoice_csv(doc["invoice"]), end="")
    else:
        _print_invoice(doc)
    return exitcodes.OK


def run_usage(args: argparse.Namespace) -> int:
    doc = statement(args)
    invoice = doc["invoice"]
    if args.json:
        args.output.summary(month=invoice["month"], through=doc["through"], usage=doc["usage"],
                            total=invoice["total"], currency=invoice["currency"], price_sheet=invoice["priceSheet"])
        return exitcodes.OK
    say(f"usage in {invoice['month']} through {doc['through']}")
    _print_usage(doc)
    say(f"cost so far: {invoice['total']} {invoice['currency']} (price sheet {invoice['priceSheet']})")
    return exitcodes.OK


def _print_invoice(doc: dict[str, Any]) -> None:
    invoice = doc["invoice"]
    say(f"invoice {invoice['month']} (through {doc['through']}), price sheet {invoice['priceSheet']}, "
        f"{invoice['currency']}")
    vault = None
    for line in invoice["lines"]:
        if line["vaultId"] != vault:
            vault = line["vaultId"]
            say(f"vault {vault}")
        say(f"  {_line_text(line):<72} {line['amount']:>10}")
    say(f"  {'total':<72} {invoice['total']:>10}")
    _print_usage(doc)


def _line_text(line: dict[str, Any]) -> str:
    kind = line["kind"]
    if kind == "protectedInstance":
        tiers = ", ".join(f"{t['tier']}{' x' + str(t['units']) if t['units'] > 1 else ''} {t['days']} d"
                          for t in line["tiers"])
        stopped = f", stopped {line['daysStopped']} d" if line["daysStopped"] else ""
        return f"item {line['itemId']}: {line['daysProtected']} days protected ({tiers or 'none'}{stopped})"
    if "gbMonths" in line:
        return f"{kind} {line['redundancy']}: {line['gbMonths']} GB-months at {line['unitPrice']}"
    quantity = human(line["quantity"]) if line["unit"] == "bytes" else f"{line['quantity']} {line['unit']}"
    return f"{kind}: {quantity} (free)"


def _print_usage(doc: dict[str, Any]) -> None:
    for vault in doc["usage"]:
        measured = vault["measuredBytes"]
        pending = f"; {vault['pendingEvents']} events pending" if vault["pendingEvents"] else ""
        say(f"vault {vault['vaultId']} ({vault['redundancy']}): {human(vault['meteredBytes'])} stored as metered"
            f"{'' if measured is None else f', {human(measured)} as measured today'}; "
            f"{vault['restores']} restores ({human(vault['restoredBytes'])}), free"
            f"{pending}")
        for point in vault["softDeleted"]:
            say(f"  soft-deleted {point['pointId']}: {human(point['bytes'])} since {point['deletedOn']}"
                f"{', purged ' + point['purgedOn'] if point['purgedOn'] else ''}")
        for item in vault["items"]:
            say(f"  item {item['item']}: {human(item['uniqueBytes'])} unique (what deleting it frees), "
                f"{human(item['sharedBytes'])} shared with other items")

