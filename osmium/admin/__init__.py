"""The admin plane: live state, history and actions for operators (see README: Admin)."""
