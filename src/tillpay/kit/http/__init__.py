"""Pure ASGI middleware forming tillpay's HTTP perimeter; each piece is small and tested."""
