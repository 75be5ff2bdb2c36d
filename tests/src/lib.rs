
pub mod moto;
