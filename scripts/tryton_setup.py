"""Seeds a fresh Tryton 8.2 database for LiveSync (run by scripts/tryton.sh setup in its venv).

Creates: currency CNY, company "LiveSync Demo Merchant" (admin's company), warehouses by code
(`main` is the module's default warehouse renamed; others are new), the customer party `LIVESYNC`
(plus any --customer codes), sale configuration (invoice method manual: no chart of accounts needed;
shipment method on order), one goods product per SKU (product code = SKU), and the initial stock
as one confirmed stock inventory per warehouse storage location, so `quantity` and
`forecast_quantity` show it.

--stock FILE: JSON list of {"sku", "warehouse", "quantity"[, "price_fen"]}; default: SKU-0000..SKU-0199,
1000 units each, in `east` when the SKU index i % 5 == 4 else `main` (the dev replay's placement).
"""
import argparse
import datetime
import json
import sys
from decimal import Decimal

from proteus import Model, config as pconfig


def default_stock(count=200, quantity=1000):
    return [{'sku': 'SKU-%04d' % i, 'warehouse': 'east' if i % 5 == 4 else 'main', 'quantity': quantity}
            for i in range(count)]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--config', required=True)
    parser.add_argument('--database', required=True)
    parser.add_argument('--stock')
    parser.add_argument('--customer', action='append', default=[])
    args = parser.parse_args()

    stock = default_stock()
    if args.stock:
        with open(args.stock) as f:
            stock = json.load(f)
    warehouses = sorted({s['warehouse'] for s in stock} | {'main'})

    pconfig.set_trytond(args.database, config_file=args.config)

    Currency = Model.get('currency.currency')
    Party = Model.get('party.party')
    Company = Model.get('company.company')
    User = Model.get('res.user')
    Location = Model.get('stock.location')
    Uom = Model.get('product.uom')
    Template = Model.get('product.template')
    Inventory = Model.get('stock.inventory')
    SaleConfig = Model.get('sale.configuration')

    cny, = Currency.find([('code', '=', 'CNY')]) or [None]
    if cny is None:
        cny = Currency(name='Chinese Yuan Renminbi', code='CNY', symbol='¥', rounding=Decimal('0.01'), digits=2)
        cny.save()

    company_party = Party(name='LiveSync Demo Merchant')
    company_party.save()
    company = Company(party=company_party, currency=cny, timezone='Asia/Shanghai')
    company.save()
    admin = User(pconfig.get_config().user)
    admin.companies.append(Company(company.id))
    admin.company = Company(company.id)
    admin.save()
    # Reload the config so the context carries the company, and take the models from it.
    pconfig.set_trytond(args.database, config_file=args.config)
    Party = Model.get('party.party')
    Location = Model.get('stock.location')
    Uom = Model.get('product.uom')
    Template = Model.get('product.template')
    Inventory = Model.get('stock.inventory')
    SaleConfig = Model.get('sale.configuration')

    for code in ['LIVESYNC'] + args.customer:
        party = Party(name='LiveSync %s' % code, code=code)
        party.addresses[0].street = 'Live-stream orders'
        party.save()

    sale_config = SaleConfig(1)
    sale_config.sale_invoice_method = 'manual'
    sale_config.sale_shipment_method = 'order'
    sale_config.save()

    wh_default, = Location.find([('type', '=', 'warehouse')])
    lost_found = wh_default.lost_found_location or Location.find([('type', '=', 'lost_found')])[0]
    by_code = {}
    for code in warehouses:
        if code == 'main':
            wh_default.code = 'main'
            wh_default.name = 'Main warehouse'
            wh_default.save()
            by_code[code] = wh_default
            continue
        storage = Location(name='%s storage' % code, code='%s-STO' % code.upper(), type='storage')
        storage.save()
        input_ = Location(name='%s input' % code, code='%s-IN' % code.upper(), type='storage')
        input_.save()
        output = Location(name='%s output' % code, code='%s-OUT' % code.upper(), type='storage')
        output.save()
        wh = Location(name='%s warehouse' % code.capitalize(), code=code, type='warehouse',
                      storage_location=storage, input_location=input_, output_location=output,
                      lost_found_location=lost_found)
        wh.save()
        for loc in (storage, input_, output):
            loc.parent = wh
            loc.save()
        by_code[code] = wh

    unit, = Uom.find([('name', '=', 'Unit')])
    prices = {}
    for s in stock:
        prices.setdefault(s['sku'], s.get('price_fen', 9900))
    templates = []
    for sku, price_fen in prices.items():
        t = Template(name='Live item %s' % sku, type='goods', default_uom=unit, salable=True,
                     sale_uom=unit, list_price=Decimal(price_fen) / 100)
        t.products[0].suffix_code = sku  # product.code = template code (none) + suffix
        templates.append(t)
    for i in range(0, len(templates), 20):  # larger saves overflow SQLite's parser stack in validation
        Template.save(templates[i:i + 20])
    Product = Model.get('product.product')
    product_by_code = {p.code: p for p in Product.find([('code', 'in', list(prices))])}

    today = datetime.date.today()
    for code, wh in by_code.items():
        lines = [s for s in stock if s['warehouse'] == code and s['quantity'] > 0]
        if not lines:
            continue
        inventory = Inventory(location=wh.storage_location, date=today)
        for s in lines:
            line = inventory.lines.new()
            line.product = product_by_code[s['sku']]
            line.quantity = float(s['quantity'])
        inventory.save()
        Inventory.confirm([inventory], pconfig.get_config().context)
    print('tryton setup: company %d (CNY), warehouses %s, %d products, %d stock lines'
          % (company.id, ','.join('%s=%d' % (c, w.id) for c, w in by_code.items()), len(prices), len(stock)))


if __name__ == '__main__':
    sys.exit(main())
