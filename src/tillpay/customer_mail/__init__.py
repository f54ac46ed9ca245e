"""Mail about money: to customers the receipt when an order is paid and a notice when a
payment fails or a refund is issued; to administrators a webhook endpoint that tillpay
disabled. Sent by the worker through the outbox, so a mail server that is down delays
these messages but loses none."""
