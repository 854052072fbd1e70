fn main() { memspace::init(); }
