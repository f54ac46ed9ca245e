"""Mail through the outbox: to customers the receipt when an order is paid and a notice
when a payment fails or a refund is issued; to every user the account notices (welcome,
2FA turned on or off, password changed, a sign-in from somewhere new); to administrators
a webhook endpoint that tillpay disabled. Sent by the worker, so a mail server that is
down delays these messages but loses none."""
