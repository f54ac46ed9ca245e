"""Mail to customers about their money: the receipt when an order is paid, a notice when
a payment fails and when a refund is issued. Sent by the worker through the outbox, so a
mail server that is down delays these messages but loses none."""
